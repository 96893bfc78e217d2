"""PersonaTalk stage 1 (style-aware geometry) and stage 2 (dual-attention renderer); issues #5 and #6."""
