"""Row sources: each kind of clip a build writes (rendered, non-instrument negatives, real recordings) is one
module behind one interface (``base.RowSource``), so that the build writes, counts and describes them alike;
``byod.py`` gives your own recordings the same columns."""
