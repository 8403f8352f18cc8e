"""The detectron2 bridge: weight export, configs, launch (``sslkit detect``).

``convert`` and ``configs`` need only torch and pyyaml; ``heads``, ``trainer`` and the
training half of ``launch`` import detectron2, which is not a dependency of sslkit.
"""
