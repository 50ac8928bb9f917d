"""Subnetworks: bigram subnetworks by continuous sparsification."""
