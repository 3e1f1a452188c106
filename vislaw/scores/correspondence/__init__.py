"""C score: zero-shot keypoint correspondence on SPair-71k from cached encoder features.

For every source keypoint of a pair: take the feature of the grid cell that holds it, compare
it (cosine) with every cell of the target's grid, predict the best cell (argmax, or a
soft-argmax in a window around it), map the prediction back to the target's original pixels,
and count it correct when it lies within ``alpha * max(h, w)`` of the target's bounding box
(or of the whole target image). C = 100 x per-image PCK@0.10: the mean over pairs of each
pair's fraction of correct keypoints.

Geometry. Under ``protocol: vislaw`` the features were computed on the letterboxed image
(``VisionEncoder.preprocess``), and the feature grid tiles that whole square. Keypoints go
through the same :class:`~vislaw.encoders.preprocess.Letterbox`, so the cell a keypoint indexes
is the cell its pixel was encoded in, and the predicted cell centre maps back exactly. Under
``protocol: paper`` the features were computed as the authors' C-score script did (stretched
image) while the keypoints still go through the letterbox: that mismatch is how the paper's
``corres`` column was computed, so it is reproduced there, not fixed (docs/c_score.md). The
feature file records its protocol and keypoint geometry; the row records the protocol.

Speed. Features are read once per image per pass, in blocks, from the HDF5 cache. Pass one
gathers the unit feature of every (pair, keypoint) query from its source image; pass two takes
each target image once and scores all of its queries, from every pair, in one matrix product,
then matches them all at once. No Python loop runs per keypoint or per pair.

Modules, one job each: :mod:`.matching` (features to predicted cells: normalisation,
upsampling, argmax / soft-argmax, the two passes over the HDF5 file), :mod:`.queries` (a split
as flat (pair, keypoint) queries, and their predicted keypoints in original pixels),
:mod:`.pck` (the PCK variants), :mod:`.fusion` (a fusion file's member channel groups),
:mod:`.score` (one encoder's row from its feature file: step ``c_score``), :mod:`.table` (the
row's columns and the C-score table: step ``c_scores_table``) and :mod:`.cli`
(``python -m vislaw.scores.correspondence``).
"""
