"""cyclegan: paper-faithful CycleGAN (Zhu, Park, Isola, Efros, ICCV 2017)."""
