"""A tiny multimodal language model on interleaved text and image tokens, on the CPU in a minute or two.

1. Trains a small image2d tokenizer (FSQ, 8x8 digits -> 4x4 tokens) for a few hundred steps.
2. Trains a byte-level BPE on the Debian ``fortunes`` quotes (/usr/share/games/fortunes).
3. Builds one :class:`vqtok.vocab.MultimodalVocab` over both, saves and reloads it.
4. Trains a 2-layer causal transformer on sequences ``fortune, <image> digit </image> " This is a 7."``
   and prints its loss, which falls as it learns text statistics, the segment grammar and the digit labels.

Run: ``python examples/multimodal_lm.py [--steps 200]``.
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqtok.data import create_dataset
from vqtok.data.text import load_fortunes
from vqtok.tokenizers import create_tokenizer
from vqtok.vocab import MultimodalVocab, train_bpe


def train_image_tokenizer(steps: int) -> tuple[nn.Module, Tensor, Tensor]:
    data = create_dataset("digits", "train")
    images, labels = data.images.float() / 255.0, data.labels
    tok = create_tokenizer(
        "image2d",
        in_channels=1,
        image_size=(8, 8),
        downsample=2,
        channels=(16, 32),
        quantizer="fsq",
        quantizer_kwargs={"levels": (8, 5, 5)},
    )
    opt = torch.optim.Adam(tok.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for step in range(1, steps + 1):
        batch = images[torch.randint(0, len(images), (64,), generator=g)]
        out = tok(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps:
            print(f"tokenizer step {step:4d}  recon mse {out.losses['recon_l2']:.4f}")
    return tok.eval(), images, labels


class TinyLM(nn.Module):
    def __init__(self, vocab_size: int, dim: int = 96, layers: int = 2, max_len: int = 256) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.pos = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, 4, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, vocab_size)

    def forward(self, ids: Tensor) -> Tensor:
        t = ids.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(t)
        h = self.embed(ids) + self.pos(torch.arange(t))
        return self.head(self.blocks(h, mask=causal, is_causal=True))  # (B, T, V)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    random.seed(0)
    t0 = time.perf_counter()

    tok, images, labels = train_image_tokenizer(args.tokenizer_steps)
    fortunes = [q for q in load_fortunes() if len(q) < 120]
    bpe = train_bpe(fortunes, vocab_size=1024)
    vocab = MultimodalVocab(bpe, {"image": tok}, max_grid_size=16)
    with tempfile.TemporaryDirectory() as tmp:
        vocab = MultimodalVocab.from_pretrained(vocab.save_pretrained(tmp))
    print(vocab)

    # Tokenize all images once in a batch, then splice their segments into sequences.
    with torch.no_grad():
        indices = tok.encode(images)  # (N, 4, 4)
    segments = [vocab.encode_indices("image", indices[i]) for i in range(len(images))]

    def sample() -> Tensor:
        i = random.randrange(len(images))
        head = vocab.encode([random.choice(fortunes)[:80] + " "])
        tail = vocab.encode([f" This is a {int(labels[i])}."])
        return torch.cat([torch.tensor([vocab.bos_id]), head, segments[i], tail, torch.tensor([vocab.eos_id])])

    example = sample()
    parts = vocab.decode(example)
    print("example sequence:", len(example), "ids ->", [p if isinstance(p, str) else tuple(p.shape) for p in parts])

    model = TinyLM(len(vocab))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    print(f"uniform loss would be {math.log(len(vocab)):.2f}")
    for step in range(1, args.steps + 1):
        seqs = [sample() for _ in range(args.batch_size)]
        batch = nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=vocab.pad_id)
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), ignore_index=vocab.pad_id
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == 1 or step % 20 == 0:
            print(f"lm step {step:4d}  loss {loss.item():.3f}")
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
