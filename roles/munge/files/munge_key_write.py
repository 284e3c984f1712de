# Write a MUNGE key given base64-encoded on standard input to the file named by argv[1], owned by argv[2]
# with mode 0400, atomically and only when its bytes differ. argv[3] == "check" compares without writing.
# Prints "changed" or "unchanged". The key never appears in arguments, output or logs.
import base64
import os
import pwd
import sys


def main():
    path, owner, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    key = base64.b64decode("".join(sys.stdin.read().split()), validate=True)
    if len(key) < 32:
        sys.stderr.write("the MUNGE key must be at least 32 bytes\n")
        return 2
    try:
        with open(path, "rb") as handle:
            old = handle.read()
    except FileNotFoundError:
        old = None
    if old == key:
        print("unchanged")
        return 0
    if mode != "check":
        user = pwd.getpwnam(owner)
        tmp = "%s.%d.tmp" % (path, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        try:
            os.fchown(fd, user.pw_uid, user.pw_gid)
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    print("changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
