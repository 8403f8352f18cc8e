"""The method plugin API (:mod:`sslkit.methods.base`), its registry and built-in methods."""
