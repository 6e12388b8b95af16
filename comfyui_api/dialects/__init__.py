"""Wire shapes of the dialects the front doors speak (no framework imports): Salad's comfyui-api, ..."""
