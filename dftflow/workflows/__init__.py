"""FireWorks workflows of dftflow studies.

``spec`` (study YAML), ``firetasks`` and ``flows`` (the workflow), ``store`` (the embedded
LaunchPad; ``mongomock_adapter`` adapts its libraries when a store is opened), ``launchpad`` (open
a study's LaunchPad), ``query``, ``submission``, ``rapidfire`` (run Fireworks in this process),
``workers`` (worker processes), ``queue`` (queue jobs) and ``status``.
"""
