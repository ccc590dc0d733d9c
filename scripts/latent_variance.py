"""How much of the clips' variation is background and how much is objects, in pixels and in VAE latents.

The flow loss of stage 1 is a mean squared error on the normalised VAE latents, so what the first tokens of a
step can most cheaply say is where the latents vary most across clips. This splits that variation: each clip
is encoded as it is and without its objects (shapes.background_clip), and the variance across clips of the
background-only version is set against that of the difference. It also reports the principal directions of
the latents across clips (the first token of a step has len(levels) FSQ dimensions) and how much of each is
background.

With --metric N it also asks whether a fixed weighting of the latent channels could make the latent error
count like the pixel error: the VAE decoder's Jacobian, estimated by central differences on N training
clips (random-sign perturbations of one channel at every position, shared across channels, so that
M[c, d] = sum over pixels of dx/dz_c dx/dz_d per latent position), gives the pixel metric M of the latent
channels, and the shares are measured again under it (and under its diagonal alone, i.e. per-channel weights).

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


@torch.no_grad()
def pixel_metric(vae, z: torch.Tensor, draws: int = 2, eps: float = 0.05, seed: int = 0) -> torch.Tensor:
    """(C, C) metric of the normalised latent channels in pixel units, per latent position: for random
    signs r over the positions, J_c = d decode / d z_c applied to r e_c (central differences); M[c, d] is
    the mean over draws of <J_c, J_d> per position (cross-position terms cancel in expectation)."""
    std, mean = vae.latent_std, vae.latent_mean
    g = torch.Generator().manual_seed(seed)
    n, C = z.shape[:2]
    M = torch.zeros(C, C)
    for _ in range(draws):
        r = torch.randint(0, 2, (n, 1, *z.shape[2:]), generator=g).float() * 2 - 1
        J = []
        for c in range(C):
            v = torch.zeros_like(z)
            v[:, c:c + 1] = r
            up, down = vae.decode_raw((z + eps * v) * std + mean), vae.decode_raw((z - eps * v) * std + mean)
            J.append(((up - down) / (2 * eps)).flatten(1))
        J = torch.stack(J, 1)  # (n, C, pixels)
        M += torch.einsum("ncp,ndp->cd", J, J) / (n * z[0, 0].numel())
    return M / draws


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="assets/tokenizer", help="tokenizer folder or VAE export")
    p.add_argument("--n", type=int, default=64, help="test clips")
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--components", type=int, default=4)
    p.add_argument("--metric", type=int, default=0, metavar="N",
                   help="also measure the shares under the VAE decoder's pixel metric, estimated on N training clips")
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
    if args.metric:
        train = shapes.SPLIT_SEEDS["train"]
        xt = torch.stack([shapes.to_tensor(shapes.make_clip(train, i, args.frames).video) for i in range(args.metric)])
        with torch.no_grad():
            zt = torch.cat([vae.encode(xt[i:i + 16]) for i in range(0, args.metric, 16)])
        M = pixel_metric(vae, zt)
        C = M.shape[0]
        L = torch.linalg.cholesky(M + 1e-6 * torch.eye(C))  # |e|^2 under M = |L^T e|^2
        zz, zzb = z.view(args.n, C, -1), zb.view(args.n, C, -1)
        for name, f in (("latents_pixel_metric", lambda a: torch.einsum("dc,ndp->ncp", L, a)),
                        ("latents_channel_weights", lambda a: a * torch.diag(M).sqrt().view(1, C, 1))):
            full, bg = f(zz).flatten(1), f(zzb).flatten(1)
            total = spread(full)
            out[name] = {"background_share": round(spread(bg) / total, 3),
                         "object_share": round(spread(full - bg) / total, 3)}
        out["channel_weights"] = [round(w, 3) for w in (torch.diag(M) / torch.diag(M).mean()).tolist()]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    from flexvid.cli import run_script
    run_script(main)
