"""Images for posts: generators (OpenAI images API, local cards), storage as generated media, pruning."""

from contentq.images.store import delete_image, get_image, list_images, prune_images
from contentq.integrations.image_generator import GeneratedImage, ImageGenerator

__all__ = ["GeneratedImage", "ImageGenerator", "delete_image", "get_image", "list_images", "prune_images"]
