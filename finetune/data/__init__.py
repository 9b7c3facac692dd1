"""Building the instrument dataset: rendering, sources, bring-your-own data, real sets, the dataset card."""
