"""Building the instrument dataset: sample libraries (``sources``) played by rendering engines (``engines/``)
into the rows of each split (``rows/``), written with a dataset card by ``python -m finetune.data``."""
