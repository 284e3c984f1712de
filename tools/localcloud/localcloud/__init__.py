"""The local cloud: an EC2 + S3 endpoint (moto in server mode) whose instances are real containers.

Development and test tool of buildfarm.ec2, excluded from the Galaxy build; nothing in plugins/ or roles/
imports it. See docs/localcloud.md.
"""

LABEL = "buildfarm.localcloud"
LABEL_DIR = "buildfarm.localcloud.dir"
LABEL_INSTANCE = "buildfarm.localcloud.instance"
LABEL_IMAGE = "buildfarm.localcloud.image"
LABEL_SUBNET = "buildfarm.localcloud.subnet"
PREFIX = "bf-lc-"
DEFAULT_IMAGE = "buildfarm/base:bookworm"
DEFAULT_REGION = "eu-west-1"
