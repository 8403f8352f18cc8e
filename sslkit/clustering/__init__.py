"""Clustering: faiss k-means, PCL concentration, hierarchical levels, metrics, HDF5 files."""
