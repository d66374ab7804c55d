"""Receptive fields (RF): which input pixels a unit of a convnet sees, four ways.

- `s7core.rf.table`: the arithmetic on a spec (one record per spatial layer, unit windows,
  the centre-unit convention); plain Python, no torch.
- `s7core.rf.trace`: the same arithmetic moved through the torch.fx graph of any nn.Module.
- `s7core.rf.effective`: the effective RF, where the gradient of one unit lands on real images.
- `s7core.rf.oracle`: the RF measured by back-propagation, a reference the tests check against.

Import from the submodule you need: the spec arithmetic then loads without torch.fx.
"""
