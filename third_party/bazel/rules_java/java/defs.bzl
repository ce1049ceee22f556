"""Offline stand-in for @rules_java//java:defs.bzl: each macro forwards to the native rule of the same name."""

def java_binary(**attrs):
    """Forwards to native.java_binary."""
    native.java_binary(**attrs)


def java_import(**attrs):
    """Forwards to native.java_import."""
    native.java_import(**attrs)


def java_library(**attrs):
    """Forwards to native.java_library."""
    native.java_library(**attrs)


def java_lite_proto_library(**attrs):
    """Forwards to native.java_lite_proto_library."""
    native.java_lite_proto_library(**attrs)


def java_package_configuration(**attrs):
    """Forwards to native.java_package_configuration."""
    native.java_package_configuration(**attrs)


def java_plugin(**attrs):
    """Forwards to native.java_plugin."""
    native.java_plugin(**attrs)


def java_proto_library(**attrs):
    """Forwards to native.java_proto_library."""
    native.java_proto_library(**attrs)


def java_runtime(**attrs):
    """Forwards to native.java_runtime."""
    native.java_runtime(**attrs)


def java_test(**attrs):
    """Forwards to native.java_test."""
    native.java_test(**attrs)


def java_toolchain(**attrs):
    """Forwards to native.java_toolchain."""
    native.java_toolchain(**attrs)
