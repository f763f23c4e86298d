import torch

# Two cores on CI: keep intra-op threads from oversubscribing.
torch.set_num_threads(min(torch.get_num_threads(), 2))
