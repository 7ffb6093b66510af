"""Foundation-model adapters: load a user-supplied checkpoint directory, embed cells or genes,
or fine-tune the model as a response predictor (`finetune`, with its weight-loading controls).

Every adapter checks the files it needs, loads weights with strict key matching, seeds every
random step and never touches the network. Shared plumbing lives in `checkpoint` (files, hashes,
strict loading, devices) and `gene_ids` (identifier maps and coverage).
"""
