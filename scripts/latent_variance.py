"""How much of the clips' variation is background and how much is objects, in pixels and in VAE latents.

The flow loss of stage 1 is a mean squared error on the normalised VAE latents, so what the first tokens of a
step can most cheaply say is where the latents vary most across clips. This splits that variation: each clip
is encoded as it is and without its objects (shapes.background_clip), and the variance across clips of the
background-only version is set against that of the difference. It also reports the principal directions of
the latents across clips (the first token of a step has len(levels) FSQ dimensions) and how much of each is
background.

    python scripts/latent_variance.py --model assets/tokenizer --n 64
"""
import argparse
import json

import torch

from flexvid import shapes
from flexvid.train_tokenizer import load_vae


def spread(a: torch.Tensor) -> float:
    """Total variance across clips (rows), summed over every element."""
    return (a - a.mean(0)).pow(2).sum(1).mean().item()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="assets/tokenizer", help="tokenizer folder or VAE export")
    p.add_argument("--n", type=int, default=64, help="test clips")
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--components", type=int, default=4)
    args = p.parse_args(argv)
    vae = load_vae(args.model)
    seed = shapes.SPLIT_SEEDS["test"]
    x = torch.stack([shapes.to_tensor(shapes.make_clip(seed, i, args.frames).video) for i in range(args.n)])
    b = torch.stack([shapes.to_tensor(shapes.background_clip(seed, i, args.frames)) for i in range(args.n)])
    with torch.no_grad():
        z = torch.cat([vae.encode(x[i:i + 16]) for i in range(0, args.n, 16)]).flatten(1)
        zb = torch.cat([vae.encode(b[i:i + 16]) for i in range(0, args.n, 16)]).flatten(1)
    out = {}
    for name, full, bg in (("pixels", x.flatten(1), b.flatten(1)), ("latents", z, zb)):
        total, back, obj = spread(full), spread(bg), spread(full - bg)
        out[name] = {"background_share": round(back / total, 3), "object_share": round(obj / total, 3)}
    zc = z - z.mean(0)
    _, sv, vh = torch.linalg.svd(zc, full_matrices=False)
    explained = (sv ** 2 / (sv ** 2).sum())[:args.components]
    zbc = zb - zb.mean(0)
    out["latent_components"] = [{"explained": round(e.item(), 3),
                                 "background_share": round(((zbc @ v).var() / (zc @ v).var()).item(), 3)}
                                for e, v in zip(explained, vh)]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
