"""Super-resolve your images with a trained model: an image or a folder in, a folder out.

The model comes from an option file or --arch/--arch_args with a checkpoint (a training
or deploy checkpoint; Ghost layers are frozen), or from an exported ONNX file (--onnx).
On a CUDA device the model runs in float16 unless --fp32 says otherwise.
Grayscale, RGB and RGBA images, 8- or 16-bit PNG and JPEG: each output is the same kind as
its input (alpha upscaled bicubically). Outputs are written whole under the input's name;
an input is never overwritten, and existing outputs only with --overwrite. A run that stops
(an unreadable image, Ctrl-C) keeps the images it finished: rerun it with --skip_existing to
do the rest, and --skip_corrupt to report and skip unreadable images instead of stopping.

Example:
  ghostsr upscale photos/ --out photos_x2 -opt options/demo/ghost_edsr_x2_demo.yml --engine compile
"""
import os.path as osp
import sys

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ghostsr_plugin import engines, trained_model
from ghostsr_plugin.atomic import atomic_path
from ghostsr_plugin.commands import positive_int, torch_device
from ghostsr_plugin.data_prep import IMAGE_SUFFIXES, list_images
from ghostsr_plugin.errors import InputError
from ghostsr_plugin.onnx_export import onnx_session, session_runner
from ghostsr_plugin.outputs import check_files_folder, check_output_files
from ghostsr_plugin.tiling import overlap_warning, tiled_forward


def add_arguments(parser):
    parser.add_argument('input', help='an image file or a folder of images')
    parser.add_argument('--out', required=True, help='the folder for the upscaled images (not the input folder)')
    trained_model.add_arguments(parser)
    parser.add_argument('--onnx', help='an exported ONNX model (`ghostsr export`) instead of -opt/--arch')
    parser.add_argument('--engine', choices=engines.ENGINES,
                        help='where the model runs (default: onnxruntime with --onnx, else eager)')
    parser.add_argument('--threads', type=positive_int, help="CPU threads (default: the engine's)")
    parser.add_argument('--device', type=torch_device, default='cuda' if torch.cuda.is_available() else 'cpu',
                        help='torch device for eager and compile (default: %(default)s)')
    engines.add_arguments(parser)
    parser.add_argument('--tile', type=positive_int, help='process each image in tiles of this many LR pixels')
    parser.add_argument('--tile_overlap', type=int, default=16,
                        help='LR pixels of context around each tile (default: %(default)s; see docs for the '
                        'receptive-field radius that makes tiles equal whole-image inference)')
    parser.add_argument('--overwrite', action='store_true', help='replace existing output files')
    parser.add_argument('--skip_existing', action='store_true',
                        help='keep existing output files and upscale only the other images (resumes a stopped run)')
    parser.add_argument('--skip_corrupt', action='store_true', help='report and skip unreadable images')


def _inputs(path):
    if osp.isfile(path):
        if not path.lower().endswith(IMAGE_SUFFIXES):
            raise InputError(f'{path}: not an image file (expected {", ".join(IMAGE_SUFFIXES)})')
        return [path]
    if not osp.isdir(path):
        raise InputError(f'input {path} does not exist')
    return [osp.join(path, name) for name in list_images(path)]


def _jobs(inputs, args):
    """``(input, output)`` of each image to upscale: an input is never touched, an existing output only with
    ``--overwrite``, and with ``--skip_existing`` it is kept and its input left out."""
    if args.overwrite and args.skip_existing:
        raise InputError('--overwrite replaces existing outputs, --skip_existing keeps them: choose one')
    check_files_folder(args.out)
    sources = {osp.realpath(p) for p in inputs}
    if osp.realpath(args.out) in {osp.dirname(p) for p in sources}:
        raise InputError(f'--out {args.out} is the input folder: the upscaled images would replace the inputs; '
                         'choose another folder')
    jobs = [(p, osp.join(args.out, osp.basename(p))) for p in inputs]
    if args.skip_existing:
        jobs = [(source, target) for source, target in jobs if not osp.isfile(target)]
    check_output_files([target for _, target in jobs], args.overwrite, inputs,
                       alternative=', or --skip_existing to keep them and upscale the rest')
    return jobs


def _model(args):
    """``run(x)`` on the engine asked, the model's scale, and the network (None for an ONNX file)."""
    if args.onnx:
        if args.opt or args.arch:
            raise InputError('--onnx names the model: drop -opt/--arch')
        if (args.engine or 'onnxruntime') != 'onnxruntime':
            raise InputError(f'--onnx runs on --engine onnxruntime, found --engine {args.engine}')
        if not osp.isfile(args.onnx):
            raise InputError(f'--onnx {args.onnx} does not exist')
        if args.precision or args.layout:
            raise InputError('--half, --fp32 and --layout apply to -opt/--arch models; --onnx runs the file as '
                             'exported')
        run, net = session_runner(onnx_session(args.onnx, args.threads)), None
    else:
        net = trained_model.load_frozen(args)[0]
        setting = engines.settings(args, args.device)
        print(f"running on {args.device} in {setting['precision']}, {setting['layout']}")
        run = engines.prepare(net, args.engine or 'eager', args.threads, args.device, **setting)
    probe = run(torch.zeros(1, 3, 8, 8))
    return run, probe.shape[-1] // 8, net


def read_image(path):
    """``(BGR or gray array, alpha or None, max value)`` of an 8- or 16-bit image file."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f'{path}: not a readable image (corrupt, or not an image)')
    if img.dtype not in (np.uint8, np.uint16):
        raise InputError(f'{path}: expected 8- or 16-bit pixels, found {img.dtype}')
    alpha = None
    if img.ndim == 3 and img.shape[2] == 4:
        img, alpha = img[..., :3], img[..., 3]
    elif img.ndim == 3 and img.shape[2] != 3:
        raise InputError(f'{path}: expected 1, 3 or 4 channels, found {img.shape[2]}')
    return img, alpha, np.iinfo(img.dtype).max


def upscale_image(run, img, alpha, max_value, scale, tile=None, overlap=0):
    """The upscaled image, same kind as the input: RGB through the model, alpha bicubic, gray via RGB."""
    gray = img.ndim == 2
    bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if gray else img
    x = torch.from_numpy(bgr[..., ::-1].astype(np.float32) / max_value).permute(2, 0, 1).unsqueeze(0)
    with torch.no_grad():
        sr = run(x) if tile is None else tiled_forward(run, x, scale, tile, overlap)
    sr = sr[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()[..., ::-1]
    out = np.ascontiguousarray((sr * max_value).round().astype(img.dtype))
    if gray:
        out = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
    if alpha is not None:
        size = (alpha.shape[1] * scale, alpha.shape[0] * scale)
        out = np.dstack([out, cv2.resize(alpha, size, interpolation=cv2.INTER_CUBIC)])
    return out


def _write(path, img):
    """Write ``img`` to ``path`` whole or not at all (in the format its extension names)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.lower().endswith(('.jpg', '.jpeg')) else []
    with atomic_path(path) as temporary:
        if not cv2.imwrite(temporary, img, params):
            raise InputError(f'{path}: could not be written')


def run(args):
    if args.tile is not None and args.tile_overlap < 0:
        raise InputError(f'--tile_overlap must be >= 0, found {args.tile_overlap}')
    inputs = _inputs(args.input)
    jobs = _jobs(inputs, args)
    model, scale, net = _model(args)
    warning = overlap_warning(net, args.tile_overlap) if net is not None and args.tile is not None else None
    if warning:
        print(warning, file=sys.stderr)
    written, skipped = 0, []
    for source, target in tqdm(jobs, desc=f'upscale x{scale}', unit='image'):
        try:
            img, alpha, max_value = read_image(source)
        except InputError as err:
            if not args.skip_corrupt:
                done = f'; the {written} image(s) done are kept: rerun with --skip_existing to go on' if written else ''
                raise InputError(f'{err} (--skip_corrupt skips such images){done}') from None
            tqdm.write(f'skipped: {err}')
            skipped.append(source)
            continue
        _write(target, upscale_image(model, img, alpha, max_value, scale, args.tile, args.tile_overlap))
        written += 1
    if skipped and not written:
        raise InputError(f'{args.input}: no image upscaled, {len(skipped)} unreadable image(s) skipped; nothing '
                         f'written to {args.out}')
    kept = len(inputs) - len(jobs)
    notes = [f'{kept} existing output(s) kept'] if kept else []
    notes += [f'{len(skipped)} unreadable image(s) skipped'] if skipped else []
    print(f"{written} image(s) x{scale} -> {args.out}{' (' + ', '.join(notes) + ')' if notes else ''}")
