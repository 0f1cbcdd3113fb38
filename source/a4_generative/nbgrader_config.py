# For students: `nbgrader validate dcgan.ipynb` (or vit.ipynb), run in this folder, reads this file.
# Training cells can take longer than nbgrader's default of 30 s per cell on a laptop.
c = get_config()  # noqa: F821 - provided by nbgrader
c.Execute.timeout = 600
