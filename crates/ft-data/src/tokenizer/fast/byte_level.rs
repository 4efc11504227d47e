//! GPT-2's byte-level alphabet: every byte of a piece's UTF-8 becomes one printable character, as
//! the `tokenizers` `ByteLevel` pre-tokenizer maps it (`bytes_char` in its `byte_level.rs`).

use std::sync::LazyLock;

/// The pattern `ByteLevel` splits with when `use_regex` is set (GPT-2's, byte for byte).
pub const GPT2_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// The character each byte becomes: printable ASCII and most of Latin-1 keep their code point,
/// the other bytes take the code points from 256 up, in byte order.
fn byte_chars() -> [char; 256] {
    let keeps_code_point = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut table = ['\0'; 256];
    let mut next_shifted = 256u32;
    for byte in 0..=255u8 {
        let code_point = if keeps_code_point(byte) {
            u32::from(byte)
        } else {
            next_shifted += 1;
            next_shifted - 1
        };
        // Code points below 512 are all valid chars.
        table[usize::from(byte)] = char::from_u32(code_point).unwrap_or('\0');
    }
    table
}

static BYTE_CHARS: LazyLock<[char; 256]> = LazyLock::new(byte_chars);

/// Appends the byte-level form of `piece` to `out`.
pub fn map_bytes(piece: &str, out: &mut String) {
    let table = &*BYTE_CHARS;
    out.reserve(piece.len() * 2);
    for &byte in piece.as_bytes() {
        out.push(table[usize::from(byte)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

    /// The library's byte-level form of `text` (no regex, no prefix space).
    fn library_form(text: &str) -> String {
        let mut pretokenized = PreTokenizedString::from(text);
        ByteLevel::new(false, false, false)
            .pre_tokenize(&mut pretokenized)
            .expect("pre-tokenizes");
        pretokenized
            .get_splits(OffsetReferential::Original, OffsetType::None)
            .into_iter()
            .map(|(piece, _, _)| piece)
            .collect()
    }

    #[test]
    fn every_byte_maps_as_the_library_maps_it() {
        // One, two, three and four byte chars: every byte a UTF-8 text can hold.
        let mut text: String = (0u32..0x800).filter_map(char::from_u32).collect();
        text.extend((0xE000u32..0xE040).filter_map(char::from_u32));
        text.extend((0..16u32).filter_map(|k| char::from_u32(0x1000 * k + 0x0A00)));
        text.extend((0..64u32).filter_map(|k| char::from_u32(0x10000 + 0x4000 * k + 0x3F)));
        text.push_str("你好𝄞");
        let mut ours = String::new();
        map_bytes(&text, &mut ours);
        assert_eq!(ours, library_form(&text));
    }

    #[test]
    fn the_alphabet_is_the_librarys() {
        let ours: std::collections::HashSet<char> = byte_chars().into_iter().collect();
        let library: std::collections::HashSet<char> = ByteLevel::alphabet().into_iter().collect();
        assert_eq!(ours, library);
    }
}
