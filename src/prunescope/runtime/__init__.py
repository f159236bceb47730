"""Inference formats of a pruned level and their measured latency, memory and energy."""
