# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Baked images (playbooks/bake.yml): the recipe and its hash (pure), finding the images of a recipe, creating
one from a configured node, and which images are superseded. Deleting them is :func:`sweep.delete_images`.
"""

from __future__ import annotations

import hashlib
import json

from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags

ROLE_IMAGE = "image"
RECIPE_SCHEMA = 1


class ImageError(Exception):
    """A recipe or an image the module cannot work with (the message says what to do)."""


def recipe(defaults_by_role, variables, base_image):
    """The recipe of a baked image: the package lists ``variables`` (role variable names) as the roles' defaults
    (``{role: defaults dict}``) give them, and the base image id. ``hash`` (16 hex digits) changes with any of
    them, and with nothing else: the order of the variables or of a list's packages does not matter."""
    if not base_image:
        raise ImageError("the recipe needs the base image id (base_image_id)")
    packages = {}
    for name in variables:
        owners = [role for role, defaults in sorted(defaults_by_role.items()) if name in (defaults or {})]
        if not owners:
            raise ImageError("no role defaults %s (roles read: %s)" % (name, ", ".join(sorted(defaults_by_role))))
        value = defaults_by_role[owners[0]][name]
        if not isinstance(value, list) or not all(isinstance(p, str) and "{{" not in p for p in value):
            raise ImageError("%s must be a plain list of package names in the role's defaults" % name)
        packages[name] = sorted(value)
    document = {"schema": RECIPE_SCHEMA, "base_image": base_image, "packages": packages}
    digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return dict(document, hash=digest, install=sorted({p for names in packages.values() for p in names}))


def image_tags(cluster, run_id, recipe_hash, base_image):
    """The tags of a baked image and its snapshot: the cluster scheme (no expiry: an image outlives its run; the
    newest ``keep`` of a cluster stay) plus the recipe hash and the base image."""
    tags = bf_tags.cluster_tags(cluster, role=ROLE_IMAGE, run_id=run_id)
    tags.update({bf_tags.TAG_RECIPE: recipe_hash, bf_tags.PREFIX + "base-image": base_image})
    tags["Name"] = "%s-image-%s" % (cluster, recipe_hash)
    return tags


def image_name(cluster, recipe_hash, run_id):
    """The AMI name (unique per account and region, as EC2 wants): cluster, recipe hash and run id."""
    return "buildfarm-%s-%s-%s" % (cluster, recipe_hash, run_id)


def summary(image):
    """A baked image as the modules return it."""
    tags = bf_tags.to_dict(image.get("Tags"))
    return {
        "id": image["ImageId"],
        "name": image.get("Name"),
        "state": image.get("State"),
        "created": image.get("CreationDate"),
        "recipe": tags.get(bf_tags.TAG_RECIPE),
        "cluster": tags.get(bf_tags.TAG_CLUSTER),
        "snapshots": [
            m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")
        ],
        "tags": tags,
    }


def newest_first(images):
    return sorted(images, key=lambda i: (i.get("created") or "", i["id"]), reverse=True)


def superseded(images, keep):
    """The images beyond the newest ``keep`` (per recipe-independent cluster list, newest first kept)."""
    return newest_first(images)[max(0, int(keep)) :]


def find(ec2, recipe_hash=None, cluster=None, name=None, states=("available",)):
    """This account's baked images (tag ``buildfarm:recipe`` present), optionally of one recipe, cluster or name,
    in ``states``; newest first."""
    filters = [{"Name": "tag-key", "Values": [bf_tags.TAG_RECIPE]}]
    if recipe_hash:
        filters.append({"Name": "tag:" + bf_tags.TAG_RECIPE, "Values": [recipe_hash]})
    if cluster:
        filters.append({"Name": "tag:" + bf_tags.TAG_CLUSTER, "Values": [cluster]})
    if name:
        filters.append({"Name": "name", "Values": [name]})
    if states:
        filters.append({"Name": "state", "Values": list(states)})
    found = ec2.describe_images(aws_retry=True, Owners=["self"], Filters=filters).get("Images", [])
    return newest_first([summary(i) for i in found])


def create(ec2, instance_id, name, tags, no_reboot):
    """CreateImage of ``instance_id`` tagged (image and snapshot) in the call; returns the image id."""
    specs = bf_tags.tag_specifications("image", tags) + bf_tags.tag_specifications("snapshot", tags)
    result = ec2.create_image(
        aws_retry=True,
        InstanceId=instance_id,
        Name=name,
        Description="buildfarm.ec2 baked image, recipe %s" % tags.get(bf_tags.TAG_RECIPE),
        NoReboot=bool(no_reboot),
        TagSpecifications=specs,
    )
    return result["ImageId"]


def wait_available(ec2, image_id, timeout):
    """Wait until the image is available (botocore waiter); a failed image raises ImageError."""
    import botocore

    delay = 5 if timeout > 60 else 1
    try:
        ec2.get_waiter("image_available").wait(
            ImageIds=[image_id], WaiterConfig={"Delay": delay, "MaxAttempts": max(1, int(timeout // delay))}
        )
    except botocore.exceptions.WaiterError as exc:
        state = (exc.last_response.get("Images") or [{}])[0].get("State", "unknown")
        raise ImageError("image %s is %s, not available, after %d s" % (image_id, state, timeout)) from None
