"""Masks and magnitude pruning."""
