"""Optimizer, schedules, the training loop and evaluation."""
