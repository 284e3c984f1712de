#!/bin/sh
# Print the block device of an attached EBS volume, or nothing when it is not (yet) visible.
#   find_volume.sh VOLUME_ID DEVICE_NAME     (either may be "")
# Order: the volume id through the NVMe by-id link, then the NVMe serial (lsblk SERIAL); then the device
# name as /dev/sdX or /dev/xvdX (aliases of each other), then the NVMe device whose EBS controller reports
# that name in its vendor-specific identify data (bytes 3072-3103). Read-only: never writes anything.
set -u
vol="${1:-}"
name="${2:-}"

if [ -n "$vol" ]; then
    hex="${vol#vol-}"
    hex="${hex#vol}"
    link="/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol${hex}"
    if [ -e "$link" ]; then
        readlink -f "$link"
        exit 0
    fi
    found=$(lsblk -dnpo NAME,SERIAL 2>/dev/null | awk -v s="vol${hex}" '$2 == s { print $1; exit }')
    if [ -n "$found" ]; then
        echo "$found"
        exit 0
    fi
fi

if [ -n "$name" ]; then
    short="${name#/dev/}"
    case "$short" in
        xvd*) suffix="${short#xvd}" ;;
        sd*) suffix="${short#sd}" ;;
        *) suffix="" ;;
    esac
    for candidate in "/dev/$short" ${suffix:+"/dev/xvd$suffix" "/dev/sd$suffix"}; do
        if [ -b "$candidate" ]; then
            readlink -f "$candidate"
            exit 0
        fi
    done
    if [ -n "$suffix" ] && command -v nvme >/dev/null 2>&1; then
        for dev in /dev/nvme*n1; do
            [ -b "$dev" ] || continue
            reported=$(nvme id-ctrl --raw-binary "$dev" 2>/dev/null | dd bs=1 skip=3072 count=32 2>/dev/null | tr -d '\000 ')
            reported="${reported#/dev/}"
            case "$reported" in
                "sd$suffix" | "xvd$suffix")
                    echo "$dev"
                    exit 0
                    ;;
            esac
        done
    fi
fi
exit 0
