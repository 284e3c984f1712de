"""The Jinja filter buildfarm.ec2.environment_file reads /etc/environment as pam_env and systemd do."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.buildfarm.ec2.plugins.filter.environment_file import FilterModule

environment_file = FilterModule().filters()["environment_file"]


def test_the_local_clouds_file():
    text = (
        "AWS_ENDPOINT_URL=http://172.17.0.1:5000\nAWS_REGION=eu-west-1\nAWS_DEFAULT_REGION=eu-west-1\n"
        "AWS_ENDPOINT_URL_S3=http://172.17.0.1:5001\n"
    )
    assert environment_file(text) == {
        "AWS_ENDPOINT_URL": "http://172.17.0.1:5000",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL_S3": "http://172.17.0.1:5001",
    }


@pytest.mark.parametrize("text", ["", None, "\n\n", "# AWS_ENDPOINT_URL=http://x\n", "not a variable\n"])
def test_nothing_set(text):
    assert environment_file(text) == {}


def test_quotes_export_comments_and_the_last_line_win():
    text = (
        '# comment\nPATH="/usr/local/bin:/usr/bin"\n  export A = \'one two\'  \nB=\nA=2\nC="unbalanced\n'
        "1BAD=x\nD=x=y\r\n"
    )
    assert environment_file(text) == {
        "PATH": "/usr/local/bin:/usr/bin",
        "A": "2",
        "B": "",
        "C": '"unbalanced',
        "D": "x=y",
    }


def test_not_text():
    with pytest.raises(AnsibleFilterError, match="expects the file's text"):
        environment_file(["A=1"])
