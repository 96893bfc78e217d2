"""``pt model``: convert a morphable face model into the project's format, or describe a converted one."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DESCRIPTION = """Morphable face models in the project's own .npz format (pt_data.face_model): mean, identity and
expression bases in millimetres, triangles, the 68 landmark vertices, MediaPipe's 478 face-mesh points matched
to model vertices (found by aligning MediaPipe's canonical mesh to the model's mean face), and vertex masks
(face, lower_face, lip, upper_face). The model id stored in clip shards is NAME:HASH.

  pt model convert  read a source model (ICT-FaceKit, Deng et al.'s BFM, FLAME, 3DDFA's BFM), write the .npz
  pt model info     print what a converted model holds and how well its MediaPipe correspondence fits"""

CONVERT_EPILOG = """source kinds:
  ict       ict_facemodel_light_face_head_11248v.npz  ICT-FaceKit light arrays (MIT; the default model,
            in ../shared/data/face_models/ict_facekit_light/)
  bfm-deng  BFM_model_front.mat   Deng et al. / Deep3DFaceRecon (BFM 2009 licence, registration)
  flame     generic_model.pkl     FLAME (FLAME licence, registration); needs --flame-landmarks; read
            without chumpy; jaw opening becomes 2 linear expression components (jaw_open, jaw_open_arc)
  3ddfa     bfm_noneck_v3.pkl     3DDFA_V2 configs/ (BFM 2009 licence); pass configs/tri.pkl as --triangles

examples:
  pt model convert --kind ict \\
      ../shared/data/face_models/ict_facekit_light/ict_facemodel_light_face_head_11248v.npz --out ict.npz
  pt model convert --kind bfm-deng BFM/BFM_model_front.mat --out bfm.npz
  pt model convert --kind flame FLAME2020/generic_model.pkl --flame-landmarks flame_static_embedding.pkl \\
      --flame-landmarks flame_dynamic_embedding.npy --num-shape 100 --num-expression 52 --out flame.npz
  pt model convert --kind 3ddfa configs/bfm_noneck_v3.pkl --triangles configs/tri.pkl --out 3ddfa.npz"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="convert a morphable face model (ICT, BFM, FLAME, 3DDFA) or show one",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    msub = p.add_subparsers(dest="model_command", metavar="{convert,info}")
    c = msub.add_parser("convert", help="convert a source model into the project's .npz",
                        description="Read a source morphable model, convert it to millimetres in the project's\n"
                                    "head frame, match MediaPipe's face mesh to it, build the masks and write one "
                                    ".npz.", epilog=CONVERT_EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("source", metavar="SOURCE", help="the source model file")
    c.add_argument("--kind", required=True, choices=["ict", "bfm-deng", "flame", "3ddfa"],
                   help="format of SOURCE (see below)")
    c.add_argument("--out", required=True, metavar="FILE.npz", help="where to write the converted model")
    c.add_argument("--mediapipe-mesh", metavar="OBJ",
                   help="MediaPipe's canonical mesh (face_model_with_iris.obj or canonical_face_model.obj; "
                        "default: found under the weights directory or the shared data)")
    c.add_argument("--flame-landmarks", metavar="FILE", action="append", default=[],
                   help="flame: a landmark embedding; repeat it to give flame_static_embedding.pkl (51 points) "
                        "and flame_dynamic_embedding.npy (the jawline), or give one 68-point embedding")
    c.add_argument("--jaw-max-deg", type=float, default=30.0, metavar="DEG",
                   help="flame: the jaw opening (degrees) that the jaw components span with coefficient 1 "
                        "(default 30)")
    c.add_argument("--triangles", metavar="PKL",
                   help="3ddfa: the triangle list of bfm_noneck_v3 (3DDFA_V2's configs/tri.pkl)")
    c.add_argument("--num-shape", type=int, metavar="N", help="keep the first N identity components (default all)")
    c.add_argument("--num-expression", type=int, metavar="N",
                   help="keep the first N expression components (default all; flame: the 2 jaw ones come first)")
    c.set_defaults(func=run_convert)
    i = msub.add_parser("info", help="describe a converted model",
                        description="Print a converted model's name, id, sizes, expression bounds, masks and its "
                                    "MediaPipe correspondence: how many points are used, how many distinct "
                                    "vertices, and (when MediaPipe's canonical mesh is found) the distance "
                                    "between the aligned canonical points and their vertices.")
    i.add_argument("file", metavar="FILE", help="a converted model (.npz)")
    i.add_argument("--mediapipe-mesh", metavar="OBJ", help="MediaPipe's canonical mesh for the residuals "
                                                           "(default: found automatically; skipped if absent)")
    i.add_argument("--json", action="store_true", help="print JSON instead of text")
    i.set_defaults(func=run_info)
    p.set_defaults(func=lambda args: _no_subcommand(p))


def _no_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_convert(args: argparse.Namespace) -> int:
    from pt_data.face_model import FaceModelError  # noqa: PLC0415 - keep `pt --help` fast
    from pt_data.face_model_formats import ConvertOptions, convert_face_model  # noqa: PLC0415

    options = ConvertOptions(num_shape=args.num_shape, num_expression=args.num_expression,
                             flame_landmarks=tuple(args.flame_landmarks), flame_jaw_max_deg=args.jaw_max_deg,
                             triangles=args.triangles)
    try:
        model = convert_face_model(args.kind, args.source, args.out, mediapipe_mesh=args.mediapipe_mesh,
                                   options=options)
    except (FaceModelError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {model.model_id}, {model.num_vertices} vertices, {model.num_shape} identity and "
          f"{model.num_expression} expression components")
    return 0


def model_summary(model, mediapipe_mesh: str | Path | None = None) -> dict:
    """What ``pt model info`` prints, as a dict (residuals only when MediaPipe's canonical mesh is found)."""
    import numpy as np  # noqa: PLC0415

    from pt_data.face_model import FaceModelError  # noqa: PLC0415
    from pt_data.face_model_convert import MP_FACE_OVAL, find_mediapipe_mesh, read_obj_vertices  # noqa: PLC0415
    from pt_data.face_model_formats import correspondence_residual_mm  # noqa: PLC0415

    bounded = np.isfinite(model.exp_lower) & np.isfinite(model.exp_upper)
    w = model.mediapipe_weights
    used = w > 0
    info = {
        "name": model.name, "model_id": model.model_id, "source": model.source,
        "vertices": model.num_vertices, "triangles": int(len(model.triangles)),
        "identity_components": model.num_shape, "expression_components": model.num_expression,
        "expression_bounded": int(bounded.sum()), "expression_unbounded": int((~bounded).sum()),
        "expression_names": list(model.exp_names),
        "masks": {k: int(v.sum()) for k, v in model.masks.items()},
        "mediapipe": {"points": int(len(w)), "used": int(used.sum()),
                      "oval_points": int(np.sum(used[list(MP_FACE_OVAL)])),
                      "distinct_vertices": int(len(np.unique(model.mediapipe_ids[used])))},
    }
    try:
        mesh = Path(mediapipe_mesh) if mediapipe_mesh else find_mediapipe_mesh()
        res = correspondence_residual_mm(model, read_obj_vertices(mesh))
        info["mediapipe"]["residual_mm"] = {"median": float(np.median(res)), "p90": float(np.percentile(res, 90)),
                                            "max": float(res.max()), "mesh": str(mesh)}
    except FaceModelError as e:
        info["mediapipe"]["residual_mm"] = None
        info["mediapipe"]["residual_note"] = str(e)
    return info


def format_summary(info: dict) -> str:
    """The text form of :func:`model_summary`."""
    names = info["expression_names"]
    shown = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
    lines = [f"model        {info['name']}  (id {info['model_id']})",
             f"source       {info['source']}",
             f"mesh         {info['vertices']} vertices, {info['triangles']} triangles (mm)",
             f"identity     {info['identity_components']} components",
             f"expression   {info['expression_components']} components: {info['expression_bounded']} bounded, "
             f"{info['expression_unbounded']} unbounded ({shown})",
             "masks        " + ", ".join(f"{k} {n} ({100 * n / max(info['vertices'], 1):.0f}%)"
                                         for k, n in info["masks"].items())]
    mp = info["mediapipe"]
    lines.append(f"mediapipe    {mp['used']} of {mp['points']} points used ({mp['oval_points']} face-oval points at "
                 f"low weight), {mp['distinct_vertices']} distinct vertices")
    r = mp.get("residual_mm")
    if r:
        lines.append(f"             aligned canonical mesh to its vertices: median {r['median']:.2f} mm, "
                     f"p90 {r['p90']:.2f} mm, max {r['max']:.2f} mm")
    else:
        lines.append(f"             residuals not computed: {mp.get('residual_note', '')}")
    return "\n".join(lines)


def run_info(args: argparse.Namespace) -> int:
    import zipfile  # noqa: PLC0415

    from pt_data.face_model import FaceModelError, load_face_model  # noqa: PLC0415

    try:
        model = load_face_model(args.file)
    except (FaceModelError, OSError, ValueError, zipfile.BadZipFile) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    info = model_summary(model, args.mediapipe_mesh)
    print(json.dumps(info, indent=2) if args.json else format_summary(info))
    return 0
