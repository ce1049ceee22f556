"""Command-line entry points of the mobile pipeline: ``convert`` (``tff-prune-convert``), ``benchmark_host``
(``tff-prune-benchmark-host``) and ``benchmark_android`` (``tff-prune-benchmark-android``, over adb).

Each ``main(argv=None)`` parses its flags, calls :mod:`mobile` and returns the process exit code.
"""
