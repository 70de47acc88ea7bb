"""Example app: classify a folder of images, or camera frames, with an edgekd bundle on a Raspberry Pi.

Needs only edgekd[rpi] (numpy, ai-edge-litert, Pillow); the camera mode also needs Picamera2
(`sudo apt install python3-picamera2`, then create the venv with --system-site-packages).

    python deploy/rpi/classify.py BUNDLE FOLDER              # every image in FOLDER, one line each
    python deploy/rpi/classify.py BUNDLE --camera [--every 0.5]

Each line: the image (or frame number), the best class, its score and the time the model took.
"""

from __future__ import annotations

import argparse
import sys
import time

from edgekd.errors import EdgekdError
from edgekd.predict import Predictor, expand_images


def classify_folder(predictor: Predictor, folder: str) -> None:
    for path in expand_images([folder]):
        start = time.perf_counter()
        result = predictor.predict(path, top_k=1)
        ms = 1000 * (time.perf_counter() - start)  # read + resize + invoke
        print(f"{path.name}  {result.label}  {result.score:.3f}  {ms:.1f} ms", flush=True)


def classify_camera(predictor: Predictor, every: float) -> None:
    from picamera2 import Picamera2  # the Pi's camera stack; not needed for folders

    camera = Picamera2()
    camera.configure(camera.create_preview_configuration(main={"format": "RGB888", "size": (640, 480)}))
    camera.start()
    try:
        frame = 0
        while True:
            # RGB888 arrives as BGR byte order in numpy: reverse the channels for the model
            image = camera.capture_array()[..., ::-1].copy()
            result = predictor.predict(image, top_k=1, source=f"frame {frame}")  # resized from the bundle's settings
            print(f"frame {frame}  {result.label}  {result.score:.3f}", flush=True)
            frame += 1
            time.sleep(every)
    except KeyboardInterrupt:
        pass
    finally:
        camera.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="an edgekd bundle folder (from `edgekd export`, copied to the Pi)")
    parser.add_argument("folder", nargs="?", help="folder (or file, or glob) of images to classify")
    parser.add_argument("--camera", action="store_true", help="classify Picamera2 frames until Ctrl-C")
    parser.add_argument("--every", type=float, default=0.5, help="camera: seconds between frames (default 0.5)")
    parser.add_argument("--format", default="tflite_int8", help="model file of the bundle (default tflite_int8)")
    parser.add_argument("--threads", type=int, default=4, help="TFLite threads (default 4, a Pi's cores)")
    args = parser.parse_args()
    if not args.camera and not args.folder:
        parser.error("give a FOLDER of images or --camera")
    try:
        predictor = Predictor(args.bundle, format=args.format, threads=args.threads)
        print(f"{predictor}", file=sys.stderr)
        if args.camera:
            classify_camera(predictor, args.every)
        else:
            classify_folder(predictor, args.folder)
    except EdgekdError as exc:
        print(f"classify: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
