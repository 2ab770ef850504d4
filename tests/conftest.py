"""Shared fixtures live in tests/support/*; each module is listed here once."""

pytest_plugins: list[str] = [
    "tests.support.dps",
    "tests.support.box",
    "tests.support.git_repos",
    "tests.support.http_server",
    "tests.support.live_server",
    "tests.support.netns",
    "tests.support.podman",
    "tests.support.postgres",
    "tests.support.run_log",
    "tests.support.rabbitmq",
    "tests.support.s3_server",
]
