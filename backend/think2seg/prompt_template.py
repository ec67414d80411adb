"""The conversation the published Think2Seg-RS weights were trained on, kept word for word.

Source: Ricardo-XZ/Think2Seg-RS, src/open-r1-multimodal/src/open_r1/dataset/EarthReason_datasets.py
(SYSTEM_PROMPT and USER_PROMPT, the "bbox + 2 pos_points" variant used by every published run). The
weights learned this exact text; changing a character changes what the model sees, so a new wording gets
a new TEMPLATE_ID and the old one stays.
"""

from __future__ import annotations

TEMPLATE_ID = "think2seg-rs/v1"

#: Side of the square image the published weights see; every coordinate they write is in this frame.
MODEL_FRAME = 840

SYSTEM_PROMPT = (
    "You are a remote sensing analysis assistant. Your task is to generate spatial prompts for the "
    "Segment Anything Model (SAM) based on a user's request."
)

# Note the trailing space after "</think>" on the "i.e." line: it is in the training text.
USER_PROMPT = """Please find "{Question}", identify the target. For each target instance, provide:
1.  `bbox_2d`: A tight bounding box.
2.  `positive_points`: Exactly two points, placed inside the target.
Output your thinking process in <think> </think> tags.
Output the final answer in <answer> </answer> tags with the specified JSON format. If no targets are found, output an empty list.
i.e. <think> thinking process here </think> 
<answer>```json[{{"bbox_2d": [310,360,567,586], "positive_points": [[434, 474], [450, 460]]}}, {{"bbox_2d": [10,200,100,320], "positive_points": [[50, 250], [90, 300]]}}]```</answer>"""


def build_conversation(query: str) -> list[dict]:
    """The chat messages for one query; the image goes where the `{"type": "image"}` entry is."""
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": USER_PROMPT.format(Question=query)}],
        },
    ]
