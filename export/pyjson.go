package export

import "bytes"

const hexDigits = "0123456789abcdef"

// writePyString writes s as a JSON string the way Python's json.dumps does with its default ensure_ascii=True:
// '"' and '\' escaped, \n \r \t \b \f in short form, every other byte outside printable ASCII (space..'~') as a
// lower-case \uXXXX escape, characters above U+FFFF as a surrogate pair. Invalid UTF-8 is written as U+FFFD.
func writePyString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for _, r := range s { // ranging over a string yields U+FFFD for invalid bytes
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r >= ' ' && r <= '~':
			b.WriteByte(byte(r))
		case r > 0xFFFF:
			r -= 0x10000
			writeU4(b, 0xD800+(r>>10))
			writeU4(b, 0xDC00+(r&0x3FF))
		default:
			writeU4(b, r)
		}
	}
	b.WriteByte('"')
}

func writeU4(b *bytes.Buffer, r rune) {
	b.WriteString(`\u`)
	b.WriteByte(hexDigits[r>>12&0xF])
	b.WriteByte(hexDigits[r>>8&0xF])
	b.WriteByte(hexDigits[r>>4&0xF])
	b.WriteByte(hexDigits[r&0xF])
}
