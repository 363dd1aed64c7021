package testmodel

// tokenizerSample is the text the real test tokenizers learn their merges from: English prose, a little code,
// numbers and a few other scripts, so that the merges are realistic and the byte fallback (SentencePiece) and
// multi-byte UTF-8 paths (byte-level BPE) are exercised by rare characters.
const tokenizerSample = `The quick brown fox jumps over the lazy dog. The dog was not amused, and the fox ran into the forest.
It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.
However little known the feelings or views of such a man may be on his first entering a neighbourhood, this truth is
so well fixed in the minds of the surrounding families, that he is considered the rightful property of some one or
other of their daughters. "My dear Mr. Bennet," said his lady to him one day, "have you heard that Netherfield Park is
let at last?" Mr. Bennet replied that he had not. "But it is," returned she; "for Mrs. Long has just been here, and
she told me all about it." Mr. Bennet made no answer. "Do you not want to know who has taken it?" cried his wife
impatiently. "You want to tell me, and I have no objection to hearing it." This was invitation enough.
We hold these truths to be self-evident, that all men are created equal, that they are endowed by their Creator with
certain unalienable Rights, that among these are Life, Liberty and the pursuit of Happiness. That to secure these
rights, Governments are instituted among Men, deriving their just powers from the consent of the governed.
In the beginning there was the model, and the model was trained on the data, and the data was good. The training
loss went down, then it went down again, and then it stopped going down; so they lowered the learning rate and
trained it for another epoch. The adapter was merged into the base model, and the merged model was published to the
hub. Don't forget: it's the tokenizer that decides what the model sees. I'm sure you'll agree we've done well; they'd
say it's fine, and we're happy they're here. Isn't it? You've seen it, haven't you? I'd like that. She'll be there.
def merge(base, adapter, scale=1.0):
    for name, weight in base.items():
        delta = adapter.get(name)
        if delta is not None:
            weight += scale * (delta.B @ delta.A)
    return base
if (x == 0 && y != 1) { return -1; } else { printf("%d\n", x + y); }
Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 42 100 128 256 512 1024 2048 4096 32000 65536 128256 151936 3.14159 2.71828
1999 2000 2024 2025 2026 12:30 07/04/1776 $19.99 100% 1,000,000 0x1F 1e-5 -42 +7 3/4 #1 @user <tag> [x] {y} (z)
Unicode: café naïve résumé façade jalapeño Zürich Ærøskøbing smörgåsbord crème brûlée São Paulo Kraków Łódź
Привет, как дела? Всё хорошо, спасибо. Москва и Санкт-Петербург. Ελληνικά: καλημέρα κόσμε. Γειά σου.
日本語のテキストです。東京は日本の首都です。中文：你好，世界。我们今天学习分词。한국어: 안녕하세요 세계.
العربية: مرحبا بالعالم. עברית: שלום עולם. हिन्दी: नमस्ते दुनिया. ไทย: สวัสดีชาวโลก. Tiếng Việt: xin chào thế giới.
Emoji: 🙂 🚀 🦙 👍🏽 ❤️ 🇺🇸 — dashes – and “quotes” and ‘single quotes’ … and the ellipsis. Tabs	and  double  spaces.
The end of the text is near; the tokenizer has seen enough of the world to learn a few hundred merges from it.
`
