#!/usr/bin/env bash
# How the committed test clips were made (needs ffmpeg, espeak-ng and the project's venv; tests
# themselves only read the resulting files). Run from the repository root:
#   apt-get install -y espeak-ng ffmpeg && bash tests/media/make_media.sh
#   00001.mp4  a real face (skimage astronaut) + English speech
#   00002.mp4  the same face mirrored + different speech
#   00003.mp4  a face, no audio track
#   00004.mp4  no face (skimage coffee) + silence (an empty transcript)
#   00005.mp4  a corrupt file (an mp4 cut after its first bytes)
set -euo pipefail
out=tests/media
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
PY=${PY:-.venv/bin/python}

"$PY" - "$tmp" <<'PY'
import sys
from skimage import data, io, transform, util

tmp = sys.argv[1]
face = transform.resize(data.astronaut()[:320, 80:400], (160, 160), anti_aliasing=True)
io.imsave(f"{tmp}/face.png", util.img_as_ubyte(face))
io.imsave(f"{tmp}/face_mirror.png", util.img_as_ubyte(face[:, ::-1]))
coffee = transform.resize(data.coffee(), (160, 160), anti_aliasing=True)
io.imsave(f"{tmp}/noface.png", util.img_as_ubyte(coffee))
PY

espeak-ng -s 150 -w "$tmp/a.wav" "I am so happy to see you again. This is wonderful."
espeak-ng -s 150 -w "$tmp/b.wav" "That must have hurt a lot. I feel sorry for you."

# A slow zoom makes consecutive frames differ, as in a real recording; 10 fps keeps the files tiny.
video=(-vf "zoompan=z='1+0.002*on':d=1:s=160x160:fps=10" -c:v libx264 -preset veryslow -crf 32 -pix_fmt yuv420p)
audio=(-c:a aac -b:a 24k -ac 1 -ar 16000)
# -shortest does not cut a looped image under a filter, so each clip gets its speech's duration.
seconds() { ffprobe -v error -show_entries format=duration -of csv=p=0 "$1"; }
ffmpeg -y -loglevel error -loop 1 -framerate 10 -t "$(seconds "$tmp/a.wav")" -i "$tmp/face.png" -i "$tmp/a.wav" \
    "${video[@]}" "${audio[@]}" "$out/00001.mp4"
ffmpeg -y -loglevel error -loop 1 -framerate 10 -t "$(seconds "$tmp/b.wav")" -i "$tmp/face_mirror.png" -i "$tmp/b.wav" \
    "${video[@]}" "${audio[@]}" "$out/00002.mp4"
ffmpeg -y -loglevel error -loop 1 -framerate 10 -t 2 -i "$tmp/face.png" "${video[@]}" -an "$out/00003.mp4"
ffmpeg -y -loglevel error -loop 1 -framerate 10 -t 2 -i "$tmp/noface.png" -f lavfi -t 2 -i anullsrc=r=16000:cl=mono \
    "${video[@]}" "${audio[@]}" "$out/00004.mp4"
head -c 2000 "$out/00001.mp4" > "$out/00005.mp4"
ls -l "$out"
