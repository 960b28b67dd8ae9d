"""Frame extraction: media in, JPEG frames at T2Vid's sampling plan out. No Spark, no storage.

A video is opened and probed in-process with PyAV, then decoded in-process from the same open
file (``pyav_decoder``) or by the bundled ffmpeg (``ffmpeg_decoder``), within one deadline;
failures come back as results, never as exceptions (see ``results``). One concern a
module, in the order a video goes through them:

- ``sampling_spec``: ``Sampling``, the parameters every extraction shares; ``Output``, ``output_size``.
- ``inputs``: source URL checks, protocol and demuxer whitelists, the pixel limit,
  ``Deadline``, ``VideoError``.
- ``probe``: ``probe``, ``ProbeInfo`` and ``OpenInput``, the file opened once (PyAV).
- ``bitstream``: H.264/HEVC frame types read from packets, ``SkipScan`` per skip level.
- ``plan``: which frame each target takes; decoder, skip level and shape (the cost model).
- ``pyav_decoder``: "single_pass" and "seek" in-process, JPEGs by Pillow's libjpeg-turbo.
- ``ffmpeg_runner``: an ffmpeg process under the deadline, JPEGs streamed out of its pipe.
- ``ffmpeg_decoder``: "single_pass" and "seek" as ffmpeg commands.
- ``results``: ``Frame``, ``VideoResult``, how failures are recorded.
- ``decode``: ``extract_frames``, decoded frames assigned to targets, the exact fallback.
- ``stills``: ``extract_image`` and the JPEG encoding of images.
- ``frames_dir``: ``extract_frames_dir``, folders of images played as a video.
- ``media``: ``extract_media``, the dispatch on a media item's kind.
"""
from udfs.video.bitstream import SkipScan
from udfs.video.decode import extract_frames
from udfs.video.ffmpeg_runner import FFmpegRun, ffmpeg_exe, jpeg_stream
from udfs.video.frames_dir import extract_frames_dir
from udfs.video.inputs import Deadline, VideoError
from udfs.video.media import extract_media
from udfs.video.plan import choose_decoder, choose_skip, choose_strategy
from udfs.video.probe import OpenInput, ProbeInfo, probe
from udfs.video.results import Frame, VideoResult
from udfs.video.sampling_spec import Output, Sampling, output_size
from udfs.video.stills import extract_image

__all__ = [
    "Deadline", "FFmpegRun", "Frame", "OpenInput", "Output", "ProbeInfo", "Sampling", "SkipScan", "VideoError",
    "VideoResult", "choose_decoder", "choose_skip", "choose_strategy", "extract_frames", "extract_frames_dir",
    "extract_image", "extract_media", "ffmpeg_exe", "jpeg_stream", "output_size", "probe",
]
