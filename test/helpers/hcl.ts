/** Text checks of the Terraform (no terraform binary here): one block, one attribute, read with regular expressions. */

/** The body of the first block whose header matches (braces balanced; strings in these files hold none). */
export function hclBlock(text: string, header: RegExp): string {
  const m = header.exec(text);
  if (!m) return '';
  let depth = 0;
  for (let i = text.indexOf('{', m.index); i < text.length; i++) {
    if (text[i] === '{') depth++;
    else if (text[i] === '}' && --depth === 0) return text.slice(m.index, i + 1);
  }
  return '';
}

/** The raw right-hand side of `name = …` in a block body (a trailing comment dropped), or undefined. */
export function hclAttr(body: string, name: string): string | undefined {
  return new RegExp(`^\\s*${name}\\s*=\\s*(.+?)\\s*(#.*)?$`, 'm').exec(body)?.[1];
}
