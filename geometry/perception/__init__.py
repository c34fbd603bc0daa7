"""Perception: what detectors and recognizers see in an image.

- ``detectors``: landmark detectors (MediaPipe Face Landmarker, dlib 68-point) behind one registry.
- ``recognizers``: face recognizers used as attackers (dlib ResNet, SFace) with one interface.
- ``metrics``: the numbers an evaluation reports (verification, identification, image similarity,
  landmark / pose / expression errors), as pure functions.

Importing this package imports no detector or recognizer library.
"""
