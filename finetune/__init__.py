"""Training side of InstruSense: data rendering, base-model import, fine-tuning, evaluation.

The app and CLI never import this package.
"""
