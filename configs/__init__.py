"""The recipes shipped with sslkit, installed as the package ``sslkit.configs``.

``<method>/<dataset>.yaml`` is the recipe that ``sslkit pretrain --method METHOD --data
DATASET`` applies automatically (``--config METHOD/NAME`` names any of them), and
``detectron2/`` holds the configs of ``sslkit detect``. This folder stays at the top of the
repository; pyproject.toml maps it into the package, so wheel and editable installs find
it the same way, through ``importlib.resources`` (``sslkit.config.recipes_dir``).
"""
