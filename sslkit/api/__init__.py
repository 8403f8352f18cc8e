"""The Python API: one function per command, each returning a result object.

``sslkit.pretrain``, ``sslkit.extract``, ``sslkit.knn``, ``sslkit.cluster``,
``sslkit.linear``, ``sslkit.semisup``, ``sslkit.transfer`` and ``sslkit.detect`` (imported
lazily by ``sslkit/__init__.py``) live in the modules of this package. Their keyword
arguments are named like the command's options (``--batch-size`` -> ``batch_size``,
``--set method.x=1`` -> ``overrides={"method.x": 1}``), and the ``to_dict()`` of what they
return is exactly what the command writes with ``--json``. The commands are thin: options
-> one of these calls -> a table and the JSON.
"""
