"""Report the demo: the trained model against bicubic on the held-out images.

Reads the option file the demo trained with, loads ``experiments/<name>/models/net_g_latest.pth``
(EMA weights), evaluates both methods with BasicSR's metrics (Y channel, border = scale)
and prints a table. Exits with status 1 if the model does not beat bicubic in PSNR.
"""
import argparse
import sys
from functools import partial

from ghostsr_plugin.data_prep import matlab_bicubic
from ghostsr_plugin.errors import exit_on_input_error
from ghostsr_plugin.evaluate import evaluate, latest_checkpoint, load_model, network_upscale
from ghostsr_plugin.option_check import load_option_file


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='the option file the demo was trained with')
    args = parser.parse_args()
    with exit_on_input_error(parser):
        report(args)


def report(args):
    opt = load_option_file(args.opt)
    scale, val = opt['scale'], opt['datasets']['val']
    checkpoint = latest_checkpoint(opt['name'])
    net = load_model(opt['network_g'], checkpoint)
    folders = (val['dataroot_gt'], val['dataroot_lq'])
    results = {
        'bicubic': evaluate(partial(matlab_bicubic, scale=scale), *folders, scale, desc='bicubic'),
        opt['network_g']['type']: evaluate(partial(network_upscale, net), *folders, scale, desc='model'),
    }

    print(f"\nHeld-out images ({val['name']}), x{scale}, PSNR (dB) / SSIM on Y, border {scale}:")
    names = [row['image'] for row in results['bicubic']['images']]
    print(f"{'method':<12}" + ''.join(f'{n:>18}' for n in names) + f"{'mean':>18}")
    for method, result in results.items():
        cells = [f"{r['psnr']:.2f} / {r['ssim']:.4f}" for r in result['images']]
        cells.append(f"{result['psnr']:.2f} / {result['ssim']:.4f}")
        print(f'{method:<12}' + ''.join(f'{c:>18}' for c in cells))
    gain = results[opt['network_g']['type']]['psnr'] - results['bicubic']['psnr']
    print(f'\n{opt["network_g"]["type"]} vs bicubic: {gain:+.2f} dB ({checkpoint})')
    if gain <= 0:
        sys.exit('the demo model does not beat bicubic')


if __name__ == '__main__':
    main()
