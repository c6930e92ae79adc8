// A small embedded bitmap font (printable ASCII, 5x9 glyph cells) for drawing text into raster
// images without font files. Used by launch/plot.cpp; glyphs live in bitmap_font.cpp.
#pragma once

namespace cairn {

inline constexpr int kGlyphWidth = 5;    // columns of a glyph
inline constexpr int kGlyphHeight = 9;   // rows of a glyph, descenders included
inline constexpr int kGlyphAscent = 7;   // rows from the top down to and including the baseline
inline constexpr int kGlyphAdvance = 6;  // horizontal distance between neighbouring characters

// True where glyph `c` has ink at (col, row), (0, 0) being its top-left. Out-of-cell positions are
// blank; characters outside printable ASCII are drawn as '?'.
bool glyph_pixel(char c, int col, int row);

}  // namespace cairn
