"""Images for posts: generators (OpenAI images API, local cards), storage as generated media, pruning."""

from contentq.images.generator import GeneratedImage, ImageGenerator
from contentq.images.store import delete_image, get_image, list_images, prune_images

__all__ = ["GeneratedImage", "ImageGenerator", "delete_image", "get_image", "list_images", "prune_images"]
