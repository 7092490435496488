"""Large-format imaging, no Ray: where tiles sit (`tiling`, `hires`, `upscaling`),
how they are blended back (`blending`, `colour`, `assembler`), how seams are scored
(`seams`) and how the canvas is written to disk (`image_writer`)."""
