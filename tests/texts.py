"""Comments the tests feed every model type: ordinary ones, and the bad input the contract covers."""

TEXTS = [
    "等了半小时都没人接电话",
    "打了三次电话还是没解决，客服还直接挂我电话！！",
    "這個月話費莫名其妙多扣了20塊，也沒人通知我",
    "客服态度很好，处理得很及时，谢谢",
    "菜有点咸",
    "请问怎么开通国际漫游？",
]
BAD = [
    None,
    "",
    "   \n\t ",
    "好" * 100_000,
    "The delivery was fine, thanks.",
    "\x00\x01\x02控制字符\x7f",
    "😡😡😡",
    "[怒]",
    "1234567890",
]
