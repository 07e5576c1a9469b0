"""Export a trained model to ONNX (dynamic batch, height and width), optionally checked in onnxruntime.

The model comes from an option file or --arch/--arch_args with a checkpoint: a deploy
checkpoint, or a training one, which is frozen first. Every Ghost layer's shift becomes a
standard Pad, so the file runs in any ONNX engine (onnxruntime, TensorRT, OpenVINO, ...).
Plain archs export the same way, to compare both in one engine.

Example:
  ghostsr export -opt options/demo/ghost_edsr_x2_demo.yml --out ghost_edsr_x2.onnx --check
"""
import os.path as osp

from ghostsr_plugin import trained_model
from ghostsr_plugin.atomic import atomic_path
from ghostsr_plugin.onnx_export import check_onnx, export_onnx
from ghostsr_plugin.outputs import check_output_file


def add_arguments(parser):
    trained_model.add_arguments(parser)
    parser.add_argument('--out', required=True, help='the ONNX file to write')
    parser.add_argument('--half', action='store_true', help='export in float16 (input and output float16 too)')
    parser.add_argument('--check', action='store_true',
                        help='run the file in onnxruntime at two input sizes and compare with PyTorch')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out file')


def run(args):
    network, checkpoint, param_key = trained_model.network_and_checkpoint(args)
    check_output_file(args.out, args.overwrite, inputs=(checkpoint, args.opt))
    net = trained_model.frozen_model(network, checkpoint, param_key)
    with atomic_path(args.out) as temporary:  # whole or not at all
        export_onnx(net, temporary, half=args.half)
        if args.check:
            for size, difference in check_onnx(net, temporary, half=args.half):
                print(f'onnxruntime vs PyTorch at input {size}: largest difference {difference:.2e}')
    print(f"{checkpoint} ({network['type']}) -> {args.out} ({osp.getsize(args.out):,d} bytes, "
          f"{'float16' if args.half else 'float32'}; input 'lr' N x 3 x H x W in [0, 1], output 'sr')")
