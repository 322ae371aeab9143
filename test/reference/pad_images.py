# The reference for pipec's image preprocessing (runtime/data/images.ts), computed the way LLaVA-1.5
# trains: its own expand2square (llava/mm_utils.py), with the processor's mean as integer RGB, for
# image_aspect_ratio "pad", then transformers' PIL-based CLIP image processor (resize the shortest edge,
# bicubic; centre crop; rescale; normalize). Without "pad", the processor alone.
#
# Input (argv[1]): {"size", "mean", "std", "images": [{"file", "pad"}]}. Output: one base64 string of
# little-endian float32 [3, size, size] per image, as a JSON list.
import base64
import json
import sys

from PIL import Image

try:  # transformers >= 5 names the PIL-based processor apart from the torchvision one
    from transformers import CLIPImageProcessorPil as Processor
except ImportError:
    from transformers import CLIPImageProcessor as Processor


def expand2square(pil_img, background_color):  # llava/mm_utils.py
    width, height = pil_img.size
    if width == height:
        return pil_img
    elif width > height:
        result = Image.new(pil_img.mode, (width, width), background_color)
        result.paste(pil_img, (0, (width - height) // 2))
        return result
    else:
        result = Image.new(pil_img.mode, (height, height), background_color)
        result.paste(pil_img, ((height - width) // 2, 0))
        return result


spec = json.load(open(sys.argv[1]))
size = spec["size"]
processor = Processor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}, image_mean=spec["mean"], image_std=spec["std"])
out = []
for case in spec["images"]:
    image = Image.open(case["file"]).convert("RGB")
    if case["pad"]:
        image = expand2square(image, tuple(int(x * 255) for x in processor.image_mean))
    pixels = processor.preprocess(image, return_tensors="np")["pixel_values"][0].astype("<f4")
    out.append(base64.b64encode(pixels.tobytes()).decode())
print(json.dumps(out))
