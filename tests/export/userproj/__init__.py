"""A user's own package, as people bring it to attn-export: copied into a test's folder by the
``user_project`` fixture and exported by import path (``userproj.models:build``).

- ``models``: a YOLO-style detector with the zoo's CBAM and SE inside and a head that caches
  its anchor grid and returns a tuple holding a dict;
- ``tiny``: a smaller detector with BatchNorm, for trained weights (``--weights``) and bench;
- ``branchy``: models the verification must reject (a data-dependent branch, a sign-flipped
  branch with outputs around 1e-5) or export only through the dynamo fallback, and one it
  must pass.
"""
