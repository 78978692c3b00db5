import torch

# Two cores: one intra-op thread per test process is faster and keeps runs comparable.
torch.set_num_threads(1)
