"""QR codes for ``otpauth://`` URIs, as inline SVG (no script, no external resource: fine under a strict CSP).

Sized for a phone camera pointed at a laptop screen: whole screen pixels per module (crisp edges, no blur), about
280 px in all with the four-module quiet zone RFC 18004 asks for, on a white background so dark themes do not hide it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import qrcode
import qrcode.constants
from qrcode.image.svg import SvgPathFillImage

__all__ = ["TARGET_PIXELS", "svg"]

TARGET_PIXELS = 280
_MIN_MODULE_PIXELS = 4
_QUIET_ZONE = 4


def svg(data: str, *, label: str = "QR code") -> str:
    """An ``<svg>`` element (markup, no XML declaration) encoding ``data``, with ``label`` as its accessible name."""
    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M,
        border=_QUIET_ZONE,
        image_factory=SvgPathFillImage,
    )
    code.add_data(data)
    code.make(fit=True)
    modules = int(code.modules_count) + 2 * _QUIET_ZONE
    size = modules * max(_MIN_MODULE_PIXELS, round(TARGET_PIXELS / modules))
    element: ET.Element = code.make_image().get_image()
    element.attrib.pop("version", None)
    element.set("width", str(size))
    element.set("height", str(size))
    element.set("shape-rendering", "crispEdges")
    element.set("role", "img")
    element.set("aria-label", label)
    for child in element:
        child.attrib.pop("id", None)
    return ET.tostring(element, encoding="unicode")
