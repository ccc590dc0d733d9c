"""Where shape is lost, by object size: plain generator samples against the tokenizer's own reconstructions.

For n test-split clips (17 frames): the embedded tokenizer's reconstruction of each clip at k = K (its
tokens, default sampler), one plain sample of the text generator from the clip's caption, and one of the
class generator from its label (same seeds as eval-generator's faithfulness pass). The probe reads the
main object; shape right is counted per size: the clip's size for the reconstruction and the text sample
(the prompt names it), the detected size for a class sample (its label does not name one).

    python scripts/shape_by_size.py --n 96
"""
import argparse
import json
import time

import torch

from flexvid import probe, shapes
from flexvid.evaluate import rate_distortion
from flexvid.eval_generator import conditions, generate_videos, score
from flexvid.generate import VideoGenerator
from flexvid.pipeline import VideoFlexTok


def tally(rows):
    out = {}
    for size in shapes.SIZE_NAMES:
        sel = [r for r in rows if r["size"] == size]
        out[size] = {"n": len(sel), "shape": sum(r["shape"] for r in sel) / max(len(sel), 1),
                     "all": sum(r["all"] for r in sel) / max(len(sel), 1)}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=96)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="JSON file for the counts")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    clips = shapes.fixed_split("test", a.n, 17)
    tok = VideoFlexTok.from_pretrained("assets/tokenizer")
    res = {"n": a.n}

    videos = rate_distortion(tok, clips, ks=[tok.n_tokens], keep_videos=True)["videos"][tok.n_tokens]
    rows = []
    for v, c in zip(videos, clips):
        s = probe.score_clip(v, list(c.objects))
        rows.append({"size": c.objects[0].size, "shape": s["shape"], "all": s["all"]})
    res["tokenizer_K"] = tally(rows)

    for cond in ("text", "class"):
        gen = VideoGenerator.from_pretrained(f"assets/generator-{cond}", tokenizer=tok)
        conds, refs = conditions(gen, clips)
        vids = generate_videos(gen, conds, gen.cfg.K, 17, 0, 16)
        rows = []
        for v, r, c in zip(vids, refs, clips):
            s = score(v, r, cond)
            if cond == "text":
                size = c.objects[0].size
            else:
                color = shapes.class_attributes(r)[0]
                dets = probe.detect(v, n_objects=2)
                det = next((d for d in dets if d.color == color), None)
                size = det.size if det is not None else None
            rows.append({"size": size, "shape": s["shape"], "all": s["all"]})
        res[f"{cond}_K"] = tally(rows)
        if cond == "class":
            res["class_K"]["undetected"] = sum(r["size"] is None for r in rows)
    res["elapsed_s"] = round(time.time() - t0, 1)
    print(json.dumps(res, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    from flexvid.cli import run_script
    run_script(main)
